"""Cannot be imported: ends the process while the module body runs."""

import os

os._exit(7)
