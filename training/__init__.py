"""Training and evaluation: datasets, model training (`pitbox train`) and scoring on simulated and real races.

Not part of any deployable's runtime: it may import the simulator (``driver_pc.adapters``)
and the appliance's detectors, strategy and models, and nothing imports it back except
the ``pitbox`` command (the composition root), ``bench/`` and the tests.
"""
