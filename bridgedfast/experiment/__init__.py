"""The end-to-end experiment: `bridgedfast run experiment.yaml` and `bridgedfast demo`."""
from .config import Experiment, ExperimentError, load_experiment, parse_experiment
from .runner import run_experiment

__all__ = ["Experiment", "ExperimentError", "load_experiment", "parse_experiment", "run_experiment"]
