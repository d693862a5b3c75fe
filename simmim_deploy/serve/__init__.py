"""simmim_deploy.serve."""
