"""Maze2D: a pure-JAX point mass in D4RL's umaze / medium / large mazes.

D4RL's maze2d (Fu et al. 2020) is a MuJoCo ball pushed by a 2-D force towards a fixed goal with
a sparse reward; it is Diffuser's headline long-horizon planning task. This is the same task in
pure JAX, so it runs vmapped on the accelerator:

- layouts, goal cells, episode lengths (300 / 600 / 800) and the sparse reward (1 within 0.5 of
  the goal centre, no termination) are D4RL's; cell (r, c) is centred at (x, y) = (r, c);
- observation (x, y, vx, vy), action a force in [-1, 1]^2;
- dynamics: a damped point mass integrated with step `DT`; walls are unit cells, and a move that
  would bring the ball's bounding square into a wall is cancelled on that axis (the velocity on
  that axis drops to zero). Axis-separated, deterministic, exact: the observation *is* the
  state, so `state_from_obs` is exact.
- resets: a uniformly chosen free cell plus U(-0.1, 0.1) position noise and N(0, 0.1) velocity,
  as in D4RL.
- the goal is a task parameter (`Env.reset(key, task=goal_xy)`, `Env.sample_task` draws a free
  cell's centre): it lives in the state, so evaluation vmaps over goals (Diffuser's Multi2D).
  Without one, an episode has D4RL's fixed goal. Deviation: D4RL's `set_target()` adds
  U(-0.1, 0.1) noise to a drawn goal; ours is the cell's centre.

The waypoint controller D4RL generated its datasets with lives here too (`waypoint_action`): a
breadth-first planner over the cells gives the next cell towards the goal, and a PD controller
steers to its centre.
"""
from __future__ import annotations

import dataclasses
from collections import deque
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from envs.core import Env, EnvSpec, TaskSpace

# D4RL's layouts ('#' wall, 'O' free, 'G' goal).
LAYOUTS = {
    "umaze": ("#####", "#GOO#", "###O#", "#OOO#", "#####"),
    "medium": ("########", "#OO##OO#", "#OO#OOO#", "##OOO###",
               "#OO#OOO#", "#O#OO#O#", "#OOO#OG#", "########"),
    "large": ("############", "#OOOO#OOOOO#", "#O##O#O#O#O#", "#OOOOOO#OOO#",
              "#O####O###O#", "#OO#O#OOOOO#", "##O#O#O#O###", "#OO#OOO#OGO#",
              "############"),
}
EPISODE_LENGTH = {"umaze": 300, "medium": 600, "large": 800}

DT = 0.1          # seconds per env step
ACCEL = 5.0       # acceleration per unit of action
DAMPING = 2.5     # linear velocity damping (1/s): top speed ACCEL / DAMPING = 2 cells/s
RADIUS = 0.1      # half-size of the ball's bounding square
GOAL_RADIUS = 0.5
# PD gains of the waypoint controller.
KP, KD = 4.0, 1.0


class MazeState(NamedTuple):
    pos: jax.Array   # (2,)
    vel: jax.Array   # (2,)
    goal: jax.Array  # (2,) the episode's goal position (its task)


@dataclasses.dataclass(frozen=True, eq=False)
class Maze:
    name: str
    walls: np.ndarray        # (H, W) bool
    goal: np.ndarray         # (2,) cell of 'G'
    free_cells: np.ndarray   # (N, 2) every non-wall cell, goal included
    next_cell: np.ndarray    # (N, H, W, 2): next cell on a shortest path to free_cells[g]
    distance: np.ndarray     # (N, H, W): path length in cells to free_cells[g] (-1 for walls)

    @property
    def goal_index(self) -> int:
        return int(np.flatnonzero((self.free_cells == self.goal).all(1))[0])


def _bfs(walls, target):
    h, w = walls.shape
    dist = np.full((h, w), -1, np.int32)
    dist[tuple(target)] = 0
    queue = deque([tuple(target)])
    while queue:
        r, c = queue.popleft()
        for dr, dc in ((1, 0), (-1, 0), (0, 1), (0, -1)):
            nr, nc = r + dr, c + dc
            if not walls[nr, nc] and dist[nr, nc] < 0:
                dist[nr, nc] = dist[r, c] + 1
                queue.append((nr, nc))
    return dist


def load_maze(name: str) -> Maze:
    rows = LAYOUTS[name]
    walls = np.array([[ch == "#" for ch in row] for row in rows])
    goal = np.argwhere(np.array([[ch == "G" for ch in row] for row in rows]))[0]
    free = np.argwhere(~walls)
    h, w = walls.shape
    dists = np.stack([_bfs(walls, f) for f in free])
    nxt = np.zeros((len(free), h, w, 2), np.int32)
    for g, d in enumerate(dists):
        for r, c in free:
            best = (r, c)
            for dr, dc in ((1, 0), (-1, 0), (0, 1), (0, -1)):
                nr, nc = r + dr, c + dc
                if d[nr, nc] >= 0 and d[nr, nc] < d[best]:
                    best = (nr, nc)
            nxt[g, r, c] = best
    return Maze(name, walls, goal, free, nxt, dists)


def _hits_wall(walls, pos):
    corners = pos[None, :] + RADIUS * jnp.array([[1, 1], [1, -1], [-1, 1], [-1, -1]])
    cells = jnp.floor(corners + 0.5).astype(jnp.int32)
    h, w = walls.shape
    cells = jnp.clip(cells, 0, jnp.array([h - 1, w - 1]))
    return walls[cells[:, 0], cells[:, 1]].any()


def _dynamics(walls, state: MazeState, action):
    vel = state.vel + DT * (ACCEL * action - DAMPING * state.vel)
    pos, new_vel = state.pos, vel
    for axis in (0, 1):  # move one axis at a time, cancelling moves into walls
        trial = pos.at[axis].add(DT * vel[axis])
        blocked = _hits_wall(walls, trial)
        pos = jnp.where(blocked, pos, trial)
        new_vel = new_vel.at[axis].set(jnp.where(blocked, 0.0, vel[axis]))
    return MazeState(pos, new_vel, state.goal)


def _obs(state: MazeState):
    return jnp.concatenate([state.pos, state.vel]).astype(jnp.float32)


def make_maze2d(spec: EnvSpec, name: str) -> Env:
    maze = load_maze(name)
    walls = jnp.asarray(maze.walls)
    free = jnp.asarray(maze.free_cells, jnp.float32)
    goal = jnp.asarray(maze.goal, jnp.float32)

    def reset_task(key, goal_xy):
        k1, k2, k3 = jax.random.split(key, 3)
        cell = free[jax.random.randint(k1, (), 0, free.shape[0])]
        pos = cell + jax.random.uniform(k2, (2,), minval=-0.1, maxval=0.1)
        vel = 0.1 * jax.random.normal(k3, (2,))
        state = MazeState(pos, vel, jnp.asarray(goal_xy, jnp.float32))
        return _obs(state), state

    def raw_reset(key):
        return reset_task(key, goal)

    def raw_step(key, state, action):
        del key
        state = _dynamics(walls, state, action)
        reward = (jnp.linalg.norm(state.pos - state.goal) <= GOAL_RADIUS).astype(jnp.float32)
        return _obs(state), state, reward, jnp.zeros((), bool)

    def raw_state_from_obs(obs, goal_xy):
        return MazeState(obs[:2], obs[2:4], jnp.asarray(goal_xy, jnp.float32))

    tasks = TaskSpace(default=lambda: goal,
                      sample=lambda key: free[jax.random.randint(key, (), 0, free.shape[0])],
                      of=lambda inner: inner.goal, reset=reset_task)
    return Env(spec, raw_reset, raw_step, raw_state_from_obs, tasks)


def waypoint_action(maze: Maze, obs, goal_index):
    """D4RL's waypoint controller: PD control towards the next cell of a shortest path."""
    nxt = jnp.asarray(maze.next_cell)
    pos, vel = obs[:2], obs[2:4]
    h, w = maze.walls.shape
    cell = jnp.clip(jnp.floor(pos + 0.5).astype(jnp.int32), 0, jnp.array([h - 1, w - 1]))
    goal_cell = jnp.asarray(maze.free_cells)[goal_index]
    waypoint = nxt[goal_index, cell[0], cell[1]].astype(jnp.float32)
    at_goal_cell = (cell == goal_cell).all()
    waypoint = jnp.where(at_goal_cell, goal_cell.astype(jnp.float32), waypoint)
    return jnp.clip(KP * (waypoint - pos) - KD * vel, -1.0, 1.0)
