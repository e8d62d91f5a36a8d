"""Local stand-ins for the backends the engines drive, following their published APIs."""
