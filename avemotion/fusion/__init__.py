"""Fused training shards (tabular Parquet + TFRecord) and the tf.data pipeline that reads them."""
