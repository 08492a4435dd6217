# Ray docs: AsyncIO for Actors, "ObjectRefs as asyncio.Futures" and
# "ObjectRefs as concurrent.futures.Futures" --
#   https://docs.ray.io/en/latest/ray-core/actors/async_api.html
# Expected output:
# | 1
# | [0, 1, 2]
# | 5
import asyncio

import sluice as ray


@ray.remote
def some_task(x=1):
    return x


async def await_obj_ref():
    print(await some_task.remote())
    print(await asyncio.gather(*[some_task.remote(i) for i in range(3)]))


asyncio.run(await_obj_ref())

# A ref converts to a concurrent.futures.Future.
fut = some_task.remote(5).future()
print(fut.result())


async def convert_to_asyncio_future():
    ref = some_task.remote()
    return await asyncio.wrap_future(ref.future())


assert asyncio.run(convert_to_asyncio_future()) == 1
