"""sluice.data: datasets of Arrow blocks for batch ETL, planned by sluice's compiler.

Build a Dataset from a source (``range``, ``from_items``, ``from_pandas``,
``from_arrow``, ``from_numpy``, ``read_parquet``, ``read_csv``, ``read_json``),
chain transforms (``map``, ``map_batches``, ``filter``, ``groupby``, ``sort``, ...)
and consume it (``take``, ``iter_batches``, ``to_pandas``, ``write_parquet``, ...).
Nothing runs until it is consumed; then consecutive maps fuse into one task per
block, projections and filters move into Parquet reads, and blocks stream
through the stages in bounded memory.
"""

from sluice.libs.data.aggregate import AggregateFn, Count, Max, Mean, Min, Std, Sum
from sluice.libs.data.context import DataContext
from sluice.libs.data.dataset import Dataset
from sluice.libs.data.grouped import GroupedData
from sluice.libs.data.read_api import (
                                       from_arrow,
                                       from_items,
                                       from_numpy,
                                       from_pandas,
                                       range,
                                       read_csv,
                                       read_json,
                                       read_parquet,
)

__all__ = [
    "AggregateFn", "Count", "DataContext", "Dataset", "GroupedData", "Max", "Mean", "Min", "Std",
    "Sum", "from_arrow", "from_items", "from_numpy", "from_pandas", "range", "read_csv", "read_json",
    "read_parquet",
]
