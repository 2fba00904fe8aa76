"""Extract files -> staged tables -> the data contract's checks -> clean tables and quarantine."""

import warnings

# pandera imports pyspark.pandas whenever pyspark is installed (it is, for the Spark engine), and
# pyspark warns there that it does not fully support pandas 3: pandas-on-Spark, which we never use.
warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas", category=FutureWarning)
