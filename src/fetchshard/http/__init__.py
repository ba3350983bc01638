"""HTTP: one fetch of one URL, with its client, deadlines, body sink and failure kinds."""
