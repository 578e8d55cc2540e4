"""corral's SDK for plugin authors: building blocks that bundled, contrib and third-party plugins share."""
