"""simmim_deploy.models."""
