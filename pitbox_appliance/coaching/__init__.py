"""Driver coaching on the appliance: profiles, training goals, badges, live training mode, plans."""
