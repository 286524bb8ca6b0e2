"""The catalogue engine: partitions → features → Predictor actors → Parquet catalogue.

Everything Ray-specific lives in `xpengine.pipeline.ray_job`; the stages it runs (`stages`) and the
writer (`writer`) are plain Python so they are tested, and usable, without a cluster.
"""
