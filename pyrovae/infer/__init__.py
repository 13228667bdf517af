"""Inference with Pyro's machinery: the ELBO and IWAE bounds per data point, importance-sampled log-likelihoods."""

from pyrovae.infer.importance import ImportanceEstimate, log_marginal_likelihood
from pyrovae.infer.iwae import TraceIWAE_ELBO
from pyrovae.infer.metrics import elbo_per_datapoint, elbo_terms

__all__ = ["ImportanceEstimate", "TraceIWAE_ELBO", "elbo_per_datapoint", "elbo_terms", "log_marginal_likelihood"]
