"""clarity package."""
