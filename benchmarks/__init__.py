"""stepwatch benchmarks: ratios against bare anyio and asyncio (see README.md)."""
