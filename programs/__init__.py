"""The site's programs, built from blocks. They see tags only: never a driver, a protocol or the plant."""
