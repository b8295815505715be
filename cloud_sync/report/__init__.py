"""Post-session reports: HTML with inline SVG plots and a PDF of it, built from a compacted session only."""
