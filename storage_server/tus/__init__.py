"""The tus 1.0.0 front door: resumable uploads kept in the store's staged uploads (docs/resumable.md)."""
