"""Request routing between plain chat and the agents."""
