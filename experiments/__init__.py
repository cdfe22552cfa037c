"""Command-line entry points (absl flags → config → one library call): the experiments
(``v1``, ``retina``, ``synthetic``, ``study``, ``demo``, ``estimators``) and the data
commands (``import_pvc11``, ``import_retina``, ``import_nwb``, ``make_synthetic``)."""
