"""simmim_deploy.train."""
