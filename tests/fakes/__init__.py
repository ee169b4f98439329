"""Local fakes that speak providers' real wire formats."""
