# Ray docs: Ray Generators, "Using the Ray generator with asyncio" --
#   https://docs.ray.io/en/latest/ray-core/ray-generator.html
# An ObjectRefGenerator is also an async iterator, and each ref can be awaited.
# Expected output:
# | 0
# | 1
# | 2
import asyncio

import sluice as ray


@ray.remote
def task():
    for i in range(3):
        yield i


async def main():
    async for ref in task.remote():
        print(await ref)


asyncio.run(main())
