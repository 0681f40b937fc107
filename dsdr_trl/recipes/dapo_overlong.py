"""DAPO's soft overlong punishment (DAPO paper, Eq. 13) as reward functions a recipe can name.

TRL provides it as a factory, `trl.rewards.get_soft_overlong_punishment(max_completion_len, soft_punish_cache)`;
a recipe can only name a function, so the two lengths the DAPO recipes need are bound here
(`dsdr_trl.recipes.dapo_overlong:soft_overlong_punishment_8k` in `reward_funcs`).

L_cache is not in the DSDR paper: we keep DAPO's ratio, L_cache = L_max / 5 (DAPO: 4096 of 20480 tokens).
"""

from trl.rewards import get_soft_overlong_punishment

soft_overlong_punishment_4k = get_soft_overlong_punishment(max_completion_len=4096, soft_punish_cache=4096 // 5)
soft_overlong_punishment_8k = get_soft_overlong_punishment(max_completion_len=8192, soft_punish_cache=8192 // 5)
