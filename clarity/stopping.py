"""What "stop" means: the one definition that the help, the REST API's documentation and the replies quote.

A stop is not a pause: `jobs.heartbeat` sees the stop flag within half a second and cancels the attempt
in progress (the sandbox kills the agent or check; the step discards the work tree and ends the task's check
run `cancelled`), then the step ends the execution `stopped`, a terminal status.
"""

from __future__ import annotations

RUNNING = ("an attempt in progress is cancelled at once (its agent is killed and its uncommitted changes are "
           "discarded); tasks already committed stay on the branch")
WAITING = "a queued, paused or blocked execution stops at once"
AFTER = ("a stopped execution cannot be resumed: `/clarity run` starts a new one, which goes on from the "
         "branch's commits")
MEANS = f"End the execution for good: {RUNNING}, and {WAITING}. {AFTER[0].upper()}{AFTER[1:]}."


def sentence(clause: str) -> str:
    """One of the clauses above as a sentence of its own."""
    return f"{clause[0].upper()}{clause[1:]}."
