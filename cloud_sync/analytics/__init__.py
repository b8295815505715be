"""Driver analytics from compacted sessions: sections, performance, lap comparison, setup impact, trends, goals and badges."""
