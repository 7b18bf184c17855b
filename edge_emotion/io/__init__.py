"""Reading and writing files: decoding videos, finding them in folders, telling file kinds apart, atomic writes."""
