//! The OP-mode dispute game between a worker and one challenger, as pure rules
//! (`docs/protocol.md` §12): 16-ary dissection of the step-leaf tree with chess clocks, ending
//! in one step that the validators re-execute. The `disputes` module keeps games in state and
//! applies their outcomes; this file only decides who has won.

use serde::{Deserialize, Serialize};
use thiserror::Error;
use verity_infer::merkle::Span;
use verity_types::Hash;

/// Binary levels one reveal spans: 2^4 = 16 hashes at most (the `k` of the protocol).
pub const DEPTH: u32 = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    Worker,
    Challenger,
}

impl Side {
    fn index(self) -> usize {
        match self {
            Side::Worker => 0,
            Side::Challenger => 1,
        }
    }

    pub fn other(self) -> Side {
        match self {
            Side::Worker => Side::Challenger,
            Side::Challenger => Side::Worker,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Both sides reveal the disputed span's descendants.
    Dissect,
    /// One leaf is left; the worker owes the one-step (anyone may send it).
    OneStep,
    Resolved {
        winner: Side,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum GameError {
    #[error("the two traces have the same root; there is nothing to dispute")]
    NoDisagreement,
    #[error("an empty trace cannot be disputed")]
    EmptyTrace,
    #[error("the game is over")]
    Resolved,
    #[error("the game is not in its {0} phase")]
    WrongPhase(&'static str),
    #[error("this side has already revealed in this round")]
    AlreadyRevealed,
    #[error("this side's clock ran out")]
    OutOfTime,
    #[error("the revealed hashes do not fold to this side's committed hash of the span")]
    DoesNotFold,
}

/// One game: the span in dispute, each side's hash of it, what each revealed this round, and
/// the clocks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Game {
    pub start: u64,
    pub len: u64,
    /// Each side's committed hash of the span, worker first.
    pub hashes: [Hash; 2],
    pub revealed: [Option<Vec<Hash>>; 2],
    /// Height at which the current round (or the one-step phase) began.
    pub round_started: u64,
    /// Blocks each side has left, as of `round_started` for a side that has not moved yet.
    pub clocks: [u64; 2],
    pub phase: Phase,
    /// Accepted moves so far, both sides.
    pub moves: u32,
    /// Who owes the move that ends the one-step phase: the worker's re-executed step, or in a
    /// language model's token game the challenger's opening of the disputed token.
    #[serde(default = "worker", skip_serializing_if = "is_worker")]
    pub one_step_by: Side,
}

fn worker() -> Side {
    Side::Worker
}

fn is_worker(side: &Side) -> bool {
    *side == Side::Worker
}

impl Game {
    /// A game over two traces of `len` steps with different roots, opened at `height`, each
    /// side with `clock` blocks.
    pub fn open(
        len: u64,
        worker_root: Hash,
        challenger_root: Hash,
        height: u64,
        clock: u64,
    ) -> Result<Self, GameError> {
        if len == 0 {
            return Err(GameError::EmptyTrace);
        }
        if worker_root == challenger_root {
            return Err(GameError::NoDisagreement);
        }
        Ok(Game {
            start: 0,
            len,
            hashes: [worker_root, challenger_root],
            revealed: [None, None],
            round_started: height,
            clocks: [clock, clock],
            phase: if len == 1 {
                Phase::OneStep
            } else {
                Phase::Dissect
            },
            moves: 0,
            one_step_by: Side::Worker,
        })
    }

    /// The same game with its one-step phase ended by `side`'s move.
    pub fn with_one_step_by(mut self, side: Side) -> Self {
        self.one_step_by = side;
        self
    }

    /// Ends this level's one-step phase with the move of the side that owes it at `height`, and
    /// goes down a level: a game over `len` leaves whose roots are `hashes` (worker first),
    /// each side keeping the clock it has left, the worker owing the next one-step.
    pub fn descend(&mut self, len: u64, hashes: [Hash; 2], height: u64) -> Result<(), GameError> {
        match self.phase {
            Phase::Resolved { .. } => return Err(GameError::Resolved),
            Phase::Dissect => return Err(GameError::WrongPhase("one-step")),
            Phase::OneStep => {}
        }
        if len == 0 {
            return Err(GameError::EmptyTrace);
        }
        if hashes[0] == hashes[1] {
            return Err(GameError::NoDisagreement);
        }
        self.spend(self.one_step_by, height)?;
        self.moves += 1;
        self.start = 0;
        self.len = len;
        self.hashes = hashes;
        self.revealed = [None, None];
        self.round_started = height;
        self.one_step_by = Side::Worker;
        self.phase = if len == 1 {
            Phase::OneStep
        } else {
            Phase::Dissect
        };
        Ok(())
    }

    pub fn span(&self) -> Span {
        Span {
            start: self.start,
            len: self.len,
        }
    }

    pub fn winner(&self) -> Option<Side> {
        match self.phase {
            Phase::Resolved { winner } => Some(winner),
            _ => None,
        }
    }

    /// Whether `side` owes a move now.
    fn owes(&self, side: Side) -> bool {
        match self.phase {
            Phase::Dissect => self.revealed[side.index()].is_none(),
            Phase::OneStep => side == self.one_step_by,
            Phase::Resolved { .. } => false,
        }
    }

    /// The last height at which `side` may still make the move it owes.
    fn last_move_height(&self, side: Side) -> u64 {
        self.round_started.saturating_add(self.clocks[side.index()])
    }

    /// The height at which the next clock runs out, if anyone owes a move.
    pub fn deadline(&self) -> Option<u64> {
        [Side::Worker, Side::Challenger]
            .into_iter()
            .filter(|s| self.owes(*s))
            .map(|s| self.last_move_height(s).saturating_add(1))
            .min()
    }

    /// Spends `side`'s clock for a move at `height`.
    fn spend(&mut self, side: Side, height: u64) -> Result<(), GameError> {
        if height > self.last_move_height(side) {
            return Err(GameError::OutOfTime);
        }
        self.clocks[side.index()] -= height.saturating_sub(self.round_started);
        Ok(())
    }

    /// `side` reveals the hashes of the span's descendants [`DEPTH`] levels down. When both
    /// have, the leftmost child on which they differ becomes the disputed span.
    pub fn reveal(&mut self, side: Side, hashes: Vec<Hash>, height: u64) -> Result<(), GameError> {
        match self.phase {
            Phase::Resolved { .. } => return Err(GameError::Resolved),
            Phase::OneStep => return Err(GameError::WrongPhase("dissection")),
            Phase::Dissect => {}
        }
        if self.revealed[side.index()].is_some() {
            return Err(GameError::AlreadyRevealed);
        }
        if self.span().fold(DEPTH, &hashes) != Some(self.hashes[side.index()]) {
            return Err(GameError::DoesNotFold);
        }
        self.spend(side, height)?;
        self.revealed[side.index()] = Some(hashes);
        self.moves += 1;
        if let [Some(worker), Some(challenger)] = &self.revealed {
            let children = self.span().descendants(DEPTH);
            // Equal children fold to equal parents, and the parents differ: one child does.
            let i = (0..children.len())
                .find(|&i| worker[i] != challenger[i])
                .expect("different parents have a different child");
            let child = children[i];
            self.hashes = [worker[i], challenger[i]];
            self.start = child.start;
            self.len = child.len;
            // A side's clock stopped when it moved; the next round starts both from here.
            self.revealed = [None, None];
            self.round_started = height;
            if child.len == 1 {
                self.phase = Phase::OneStep;
            }
        }
        Ok(())
    }

    /// The validators re-executed the disputed step and got `leaf`: the worker wins if it is
    /// the worker's, the challenger otherwise (the worker's trace is wrong at this step, whatever
    /// the challenger claimed).
    pub fn one_step(&mut self, leaf: Hash, height: u64) -> Result<Side, GameError> {
        match self.phase {
            Phase::Resolved { .. } => return Err(GameError::Resolved),
            Phase::Dissect => return Err(GameError::WrongPhase("one-step")),
            Phase::OneStep => {}
        }
        self.spend(self.one_step_by, height)?;
        self.moves += 1;
        let winner = if leaf == self.hashes[Side::Worker.index()] {
            Side::Worker
        } else {
            Side::Challenger
        };
        self.phase = Phase::Resolved { winner };
        Ok(winner)
    }

    /// Ends the game at `height` if a side that owes a move has run out of time; returns the
    /// winner. When both run out at once the challenger loses: a result stands until disproven.
    pub fn expire(&mut self, height: u64) -> Option<Side> {
        let out = |s: Side| self.owes(s) && height > self.last_move_height(s);
        let winner = match (out(Side::Worker), out(Side::Challenger)) {
            (_, true) => Side::Worker,
            (true, false) => Side::Challenger,
            (false, false) => return None,
        };
        self.phase = Phase::Resolved { winner };
        Some(winner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use verity_infer::merkle::root;

    fn hashes_of(leaves: &[Hash], parts: &[Span]) -> Vec<Hash> {
        parts
            .iter()
            .map(|p| root(&leaves[p.start as usize..(p.start + p.len) as usize]))
            .collect()
    }

    fn leaves(n: usize, salt: u8) -> Vec<Hash> {
        (0..n)
            .map(|i| verity_types::sha256(&[&(i as u64).to_le_bytes()[..], &[salt]].concat()))
            .collect()
    }

    /// How a lying side plays a round.
    #[derive(Debug, Clone, Copy)]
    enum Play {
        /// Reveals its own (false) tree, consistently.
        Consistent,
        /// Tries the honest side's hashes first (refused: they fold to the other root), then its
        /// own.
        Borrowed,
        /// Waits `n` blocks, then reveals its own.
        Slow(u64),
        /// Never moves again.
        Silent,
    }

    fn play() -> impl Strategy<Value = Play> {
        prop_oneof![
            Just(Play::Consistent),
            Just(Play::Borrowed),
            (0u64..60).prop_map(Play::Slow),
            Just(Play::Silent),
        ]
    }

    const CLOCK: u64 = 40;

    /// Plays a full game: the honest side moves at once every time; the liar plays `plays`
    /// round by round; the one-step is refereed by the honest trace. Returns the winner, the
    /// liar's side, the moves and the blocks it took.
    fn run(honest: &[Hash], liar: &[Hash], liar_side: Side, plays: &[Play]) -> (Side, u32, u64) {
        let n = honest.len() as u64;
        let (worker, challenger) = match liar_side {
            Side::Worker => (liar, honest),
            Side::Challenger => (honest, liar),
        };
        let opened = 100;
        let mut game = Game::open(n, root(worker), root(challenger), opened, CLOCK).unwrap();
        let mut height = opened;
        let mut round = 0;
        loop {
            if let Some(winner) = game.winner() {
                return (winner, game.moves, height - opened);
            }
            match game.phase {
                Phase::Dissect => {
                    let parts = game.span().descendants(DEPTH);
                    let play = plays[round % plays.len()];
                    round += 1;
                    let honest_side = liar_side.other();
                    game.reveal(honest_side, hashes_of(honest, &parts), height)
                        .unwrap();
                    let own = hashes_of(liar, &parts);
                    // A liar out of time is refused, and loses on its clock.
                    let liar_reveals = |game: &mut Game, hashes: Vec<Hash>, height: u64| match game
                        .reveal(liar_side, hashes, height)
                    {
                        Ok(()) => {}
                        Err(GameError::OutOfTime) => {
                            assert_eq!(game.expire(height), Some(liar_side.other()))
                        }
                        Err(e) => panic!("{e}"),
                    };
                    match play {
                        Play::Consistent => liar_reveals(&mut game, own, height),
                        Play::Borrowed => {
                            let borrowed = hashes_of(honest, &parts);
                            assert_eq!(
                                game.reveal(liar_side, borrowed, height),
                                Err(GameError::DoesNotFold)
                            );
                            liar_reveals(&mut game, own, height);
                        }
                        Play::Slow(wait) => {
                            // Time passes block by block; the clock may run out on the way.
                            for _ in 0..wait {
                                height += 1;
                                if game.expire(height).is_some() {
                                    break;
                                }
                            }
                            if game.winner().is_none() {
                                liar_reveals(&mut game, own, height);
                            }
                        }
                        Play::Silent => {
                            while game.expire(height).is_none() {
                                assert_eq!(game.deadline().map(|d| d > height), Some(true));
                                height += 1;
                            }
                        }
                    }
                    height += 1;
                }
                Phase::OneStep => {
                    // A worker whose clock ran out in the last round loses before any one-step;
                    // otherwise the validators' re-execution yields the honest leaf.
                    if game.expire(height).is_none() {
                        game.one_step(honest[game.start as usize], height).unwrap();
                    }
                }
                Phase::Resolved { .. } => unreachable!(),
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(96))]

        /// Whichever side lies, at whatever steps, however it plays: the honest side wins, in at
        /// most ⌈log16 n⌉ rounds plus the one-step, within both clocks.
        #[test]
        fn the_honest_side_always_wins(
            n in 1usize..3000,
            lies in prop::collection::vec(any::<prop::sample::Index>(), 1..4),
            tail in any::<bool>(),
            liar_is_worker in any::<bool>(),
            plays in prop::collection::vec(play(), 1..6),
        ) {
            let honest = leaves(n, 0);
            let mut liar = honest.clone();
            let fake = leaves(n, 1);
            for lie in &lies {
                let at = lie.index(n);
                // A corrupted output changes every later step (`tail`), or only some steps.
                let end = if tail { n } else { at + 1 };
                liar[at..end].copy_from_slice(&fake[at..end]);
            }
            let liar_side = if liar_is_worker { Side::Worker } else { Side::Challenger };
            let (winner, moves, blocks) = run(&honest, &liar, liar_side, &plays);
            prop_assert_eq!(winner, liar_side.other());
            // The tree is ⌈log2 n⌉ levels deep and a round descends DEPTH of them.
            let rounds = (n as u64).next_power_of_two().trailing_zeros().div_ceil(DEPTH);
            // Two reveals per round and the one-step.
            prop_assert!(moves <= 2 * rounds + 1, "{moves} moves for {n} steps");
            prop_assert!(blocks <= 2 * CLOCK + rounds as u64 + 1, "{blocks} blocks");
        }
    }

    #[test]
    fn a_10000_step_dispute_takes_four_rounds_and_nine_moves() {
        let honest = leaves(10_000, 0);
        let liar = corrupted_from(&honest, 5_000);
        // Both sides answer in the block after each round starts.
        let (winner, moves, blocks) = run(&honest, &liar, Side::Worker, &[Play::Consistent]);
        assert_eq!(winner, Side::Challenger);
        assert_eq!(moves, 2 * 4 + 1);
        assert_eq!(blocks, 4);
    }

    fn corrupted_from(honest: &[Hash], from: usize) -> Vec<Hash> {
        let fake = leaves(honest.len(), 1);
        let mut liar = honest.to_vec();
        liar[from..].copy_from_slice(&fake[from..]);
        liar
    }

    #[test]
    fn no_move_after_the_game_ends_and_both_silent_keeps_the_result() {
        let honest = leaves(20, 0);
        let liar = leaves(20, 1);
        let mut game = Game::open(20, root(&honest), root(&liar), 10, 5).unwrap();
        assert_eq!(game.deadline(), Some(16));
        assert_eq!(game.expire(15), None);
        // Neither side moved: the challenger loses, the result stands.
        assert_eq!(game.expire(16), Some(Side::Worker));
        let parts = game.span().descendants(DEPTH);
        assert_eq!(
            game.reveal(Side::Challenger, hashes_of(&liar, &parts), 16),
            Err(GameError::Resolved)
        );
        assert_eq!(game.one_step(honest[0], 16), Err(GameError::Resolved));
    }

    #[test]
    fn a_move_past_the_clock_is_refused() {
        let honest = leaves(3, 0);
        let liar = leaves(3, 1);
        let mut game = Game::open(3, root(&honest), root(&liar), 0, 4).unwrap();
        let parts = game.span().descendants(DEPTH);
        assert_eq!(
            game.reveal(Side::Worker, hashes_of(&honest, &parts), 5),
            Err(GameError::OutOfTime)
        );
        // Revealing twice in one round, or the wrong phase's move, is refused.
        game.reveal(Side::Worker, hashes_of(&honest, &parts), 2)
            .unwrap();
        assert_eq!(
            game.reveal(Side::Worker, hashes_of(&honest, &parts), 2),
            Err(GameError::AlreadyRevealed)
        );
        assert_eq!(
            game.one_step(honest[0], 2),
            Err(GameError::WrongPhase("one-step"))
        );
        // The worker spent 2 of its 4 blocks; the challenger still has its 4.
        assert_eq!(game.clocks, [2, 4]);
        assert_eq!(game.deadline(), Some(5));
        assert!(Game::open(3, root(&honest), root(&honest), 0, 4).is_err());
        assert_eq!(
            Game::open(0, root(&honest), root(&liar), 0, 4),
            Err(GameError::EmptyTrace)
        );
    }

    #[test]
    fn a_token_game_is_ended_by_the_challenger_and_goes_down_with_the_clocks_left() {
        let honest = leaves(8, 0);
        let liar = corrupted_from(&honest, 5);
        let mut game = Game::open(8, root(&liar), root(&honest), 0, 10)
            .unwrap()
            .with_one_step_by(Side::Challenger);
        let parts = game.span().descendants(DEPTH);
        game.reveal(Side::Worker, hashes_of(&liar, &parts), 1)
            .unwrap();
        game.reveal(Side::Challenger, hashes_of(&honest, &parts), 3)
            .unwrap();
        assert_eq!((game.phase, game.start), (Phase::OneStep, 5));
        // The challenger owes the opening: its silence loses it the game, not the worker's.
        assert_eq!(game.deadline(), Some(3 + 7 + 1));
        let mut silent = game.clone();
        assert_eq!(silent.expire(11), Some(Side::Worker));
        // The worker cannot end this level with a one-step of its own.
        let next = [leaves(1, 7)[0], leaves(1, 8)[0]];
        game.descend(300, next, 6).unwrap();
        assert_eq!(game.clocks, [9, 4]);
        assert_eq!(
            (game.phase, game.len, game.one_step_by),
            (Phase::Dissect, 300, Side::Worker)
        );
        assert_eq!(game.hashes, next);
        assert_eq!(
            game.descend(1, next, 6),
            Err(GameError::WrongPhase("one-step"))
        );
        // A sampling level is a single leaf, its one-step owed by the worker.
        let mut sampling = silent.clone();
        sampling.phase = Phase::OneStep;
        sampling.descend(1, next, 4).unwrap();
        assert_eq!(
            (sampling.phase, sampling.one_step_by),
            (Phase::OneStep, Side::Worker)
        );
        assert_eq!(sampling.one_step(next[1], 5), Ok(Side::Challenger));
        let mut same = Game::open(2, root(&liar), root(&honest), 0, 10).unwrap();
        same.phase = Phase::OneStep;
        assert_eq!(
            same.descend(4, [next[0], next[0]], 1),
            Err(GameError::NoDisagreement)
        );
    }
}
