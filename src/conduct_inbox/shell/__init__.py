"""The I/O shell: wiring, loops and operations that touch files, servers and the database."""
