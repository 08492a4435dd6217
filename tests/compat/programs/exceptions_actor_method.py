# Ray docs: Actor fault tolerance, "Actor method exceptions" --
#   https://docs.ray.io/en/latest/ray-core/fault_tolerance/actors.html
# A method that raises fails only its own call (RayTaskError and the method's own type);
# the actor lives on with its state.
# Expected output:
# | caught: bad value -1
# | still alive: 2
import sluice as ray


@ray.remote
class Account:
    def __init__(self):
        self.balance = 0

    def deposit(self, amount):
        if amount < 0:
            raise ValueError(f"bad value {amount}")
        self.balance += amount
        return self.balance


account = Account.remote()
ray.get(account.deposit.remote(1))
try:
    ray.get(account.deposit.remote(-1))
except ValueError as e:
    assert isinstance(e, ray.exceptions.RayTaskError)
    assert not isinstance(e, ray.exceptions.RayActorError)
    print("caught:", e.cause)
print("still alive:", ray.get(account.deposit.remote(1)))
