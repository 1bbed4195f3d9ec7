"""Column names of the offline data and of training batches (no dependencies: the math imports it).

Names follow RLlib's `Columns` where one exists (`obs`, `actions`, `rewards`, `t`); the rest are
MACAW's (`mc_return` = R, `terminal_obs` = s^T, `terminal_discount` = g; spec §4.1).
"""

TASK_ID = "task_id"
EPISODE_ID = "episode_id"
T = "t"
STEP = "step"
OBS = "obs"
ACTIONS = "actions"
NEXT_OBS = "next_obs"
TERMINAL_OBS = "terminal_obs"
REWARDS = "rewards"
TERMINATED = "terminated"
TRUNCATED = "truncated"
MC_RETURN = "mc_return"
TERMINAL_DISCOUNT = "terminal_discount"

OBS_COLUMNS = (OBS, NEXT_OBS, TERMINAL_OBS)
VECTOR_COLUMNS = (*OBS_COLUMNS, ACTIONS)
SCALAR_FLOAT_COLUMNS = (REWARDS, MC_RETURN, TERMINAL_DISCOUNT)
FLOAT_COLUMNS = (*VECTOR_COLUMNS, *SCALAR_FLOAT_COLUMNS)
