"""simmim_deploy.data."""
