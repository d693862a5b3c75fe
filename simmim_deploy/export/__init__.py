"""simmim_deploy.export."""
