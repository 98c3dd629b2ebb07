"""BALLU facts and task choices shared by every simulator backend (MuJoCo, Isaac Lab).

`body` holds the robot's physical parameters and its MJCF (`BalluBody`, `robot_xml`);
`facts` the task's constants, torque laws, observation layout, reward terms and termination
limits; `settings` the task and PPO settings models. Backends import them
instead of restating them, so both simulate and score the same task.
"""
