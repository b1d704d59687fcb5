"""A correct torch target that imports parts of torch which rebind torch's own names when they load
(torch._dynamo wraps torch.manual_seed): that is no tampering, and the checker must not call it one."""

import torch._dynamo  # noqa: F401
from torch_targets import good as group_norm  # noqa: F401
