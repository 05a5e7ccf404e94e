"""Local stand-ins for clouds that have no emulator."""
