"""Bitbucket Pipe: keyless Google Cloud access through Workload Identity Federation."""
