"""Where the data comes from: the HTTP client, SoQL reading, dataset specs and typing."""
