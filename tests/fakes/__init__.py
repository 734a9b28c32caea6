"""Loopback stand-ins for internet services, speaking their documented wire formats."""
