"""github_app package."""
