# Tests use tiny models, which are overhead-bound: one thread is as fast as two and does not fight the
# other processes of a test (DDP ranks, subprocess runs) for the 2 cores of a laptop or CI machine.
import os

os.environ["OMP_NUM_THREADS"] = "1"  # inherited by the scripts the tests run as subprocesses

import torch  # noqa: E402

torch.set_num_threads(1)
