# checkov loads external Python checks from a package: import every module here.
from glob import glob
from os.path import basename, dirname, isfile, join

__all__ = [basename(f)[:-3] for f in glob(join(dirname(__file__), "*.py")) if isfile(f) and not f.endswith("__init__.py")]
