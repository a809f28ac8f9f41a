//! A bank with a model of its own, as a user writes one when the built-in
//! models do not fit: five accounts, transfers between them, `pay` (money
//! leaves the bank, so the total changes), balance and total reads. The
//! state machine, the model (`Ledger`, implementing
//! `concord_sim::check::Model`) and the workload that maps commands to the
//! model's inputs; docs/testing-your-service.md quotes this file, and
//! `sim/tests/ledger.rs` runs it under the default simulator configuration.
//!
//! Commands (bytes): transfer `[0, from, to, amount: u32 le]` and pay
//! `[3, from, amount: u32 le]` answer `[1]` when the money moved, `[0]` for
//! insufficient funds; balance `[1, account]` and total `[2]` answer an
//! `i64 le`.

use bytes::Bytes;
use concord::state_machine::{RestoreError, StateMachine};
use concord_sim::check::workload::ModelWorkload;
use concord_sim::check::{CheckConfig, Model};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// Accounts 0 to 4.
pub const ACCOUNTS: usize = 5;

/// Every account opens with this balance.
pub const OPENING: i64 = 100;

/// The replicated state machine: one balance per account.
pub struct LedgerSm {
    balances: [i64; ACCOUNTS],
}

impl Default for LedgerSm {
    fn default() -> Self {
        LedgerSm {
            balances: [OPENING; ACCOUNTS],
        }
    }
}

impl LedgerSm {
    fn debit(&mut self, from: u8, amount: i64) -> bool {
        let enough = self.balances[from as usize] >= amount;
        if enough {
            self.balances[from as usize] -= amount;
        }
        enough
    }

    fn read(&self, command: &[u8]) -> Option<Bytes> {
        let amount = match command {
            [1, account] => *self.balances.get(*account as usize)?,
            [2] => self.balances.iter().sum(),
            _ => return None,
        };
        Some(Bytes::copy_from_slice(&amount.to_le_bytes()))
    }
}

fn done(moved: bool) -> Bytes {
    Bytes::from_static(if moved { &[1] } else { &[0] })
}

impl StateMachine for LedgerSm {
    fn apply(&mut self, _index: u64, command: &[u8]) -> Bytes {
        let valid = |a: &u8| (*a as usize) < ACCOUNTS;
        match command {
            [0, from, to, a @ ..] if valid(from) && valid(to) && a.len() == 4 => {
                let amount = u32::from_le_bytes([a[0], a[1], a[2], a[3]]) as i64;
                let moved = self.debit(*from, amount);
                if moved {
                    self.balances[*to as usize] += amount;
                }
                done(moved)
            }
            [3, from, a @ ..] if valid(from) && a.len() == 4 => {
                let amount = u32::from_le_bytes([a[0], a[1], a[2], a[3]]) as i64;
                done(self.debit(*from, amount))
            }
            // A read sent through the log answers like a query.
            _ => self.read(command).unwrap_or_default(),
        }
    }

    fn query(&self, command: &[u8]) -> Option<Bytes> {
        self.read(command)
    }

    fn snapshot(&self) -> Bytes {
        self.balances
            .iter()
            .flat_map(|b| b.to_le_bytes())
            .collect::<Vec<u8>>()
            .into()
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), RestoreError> {
        if snapshot.len() != 8 * ACCOUNTS {
            return Err(RestoreError::new("want 8 bytes per account"));
        }
        for (b, c) in self.balances.iter_mut().zip(snapshot.chunks(8)) {
            *b = i64::from_le_bytes(c.try_into().expect("8 bytes"));
        }
        Ok(())
    }
}

// Guide, your own model.
/// What a client asks the ledger for.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum LedgerInput {
    /// Move `amount` from one account to another, if `from` has it.
    Transfer { from: u8, to: u8, amount: i64 },
    /// Pay `amount` out of the bank from an account, if it has it.
    Pay { from: u8, amount: i64 },
    /// Read one account's balance.
    Balance(u8),
    /// Read the sum of the balances.
    Total,
}

/// What the ledger answered.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum LedgerOutput {
    /// A transfer or payment: whether the money moved.
    Moved(bool),
    /// A balance or the total.
    Amount(i64),
}

/// The sequential ledger: five balances.
pub struct Ledger;

impl Ledger {
    /// The state after `input` in `state`, and what the ledger answers.
    fn apply(state: &[i64; ACCOUNTS], input: &LedgerInput) -> ([i64; ACCOUNTS], LedgerOutput) {
        let mut next = *state;
        let output = match *input {
            LedgerInput::Transfer { from, to, amount } => {
                let moved = next[from as usize] >= amount;
                if moved {
                    next[from as usize] -= amount;
                    next[to as usize] += amount;
                }
                LedgerOutput::Moved(moved)
            }
            LedgerInput::Pay { from, amount } => {
                let moved = next[from as usize] >= amount;
                if moved {
                    next[from as usize] -= amount;
                }
                LedgerOutput::Moved(moved)
            }
            LedgerInput::Balance(a) => LedgerOutput::Amount(state[a as usize]),
            LedgerInput::Total => LedgerOutput::Amount(state.iter().sum()),
        };
        (next, output)
    }
}

impl Model for Ledger {
    type State = [i64; ACCOUNTS];
    type Input = LedgerInput;
    type Output = LedgerOutput;

    fn name(&self) -> String {
        "ledger".into()
    }

    fn init(&self) -> [i64; ACCOUNTS] {
        [OPENING; ACCOUNTS]
    }

    /// Accepts `output` only if the ledger in `state` answers it.
    fn step(
        &self,
        state: &[i64; ACCOUNTS],
        input: &LedgerInput,
        output: &LedgerOutput,
    ) -> Option<[i64; ACCOUNTS]> {
        let (next, answer) = Ledger::apply(state, input);
        (answer == *output).then_some(next)
    }

    /// A transfer or payment whose answer was lost moves the money if the
    /// account has it; a lost read changes nothing.
    fn step_unknown(&self, state: &[i64; ACCOUNTS], input: &LedgerInput) -> Vec<[i64; ACCOUNTS]> {
        vec![Ledger::apply(state, input).0]
    }

    /// Reads, and transfers or payments refused for insufficient funds,
    /// change nothing in any state that accepts them: the search places
    /// them without branching.
    fn read_only(&self, input: &LedgerInput, output: &LedgerOutput) -> bool {
        !matches!(
            (input, output),
            (
                LedgerInput::Transfer { .. } | LedgerInput::Pay { .. },
                LedgerOutput::Moved(true)
            )
        )
    }

    /// What a stuck operation saw was made by the transfers and payments
    /// that touch its accounts: an explanation keeps them.
    fn pins(&self, stuck: &LedgerInput, _output: &LedgerOutput, other: &LedgerInput) -> bool {
        let touched = |a: u8| match *other {
            LedgerInput::Transfer { from, to, .. } => a == from || a == to,
            LedgerInput::Pay { from, .. } => a == from,
            _ => false,
        };
        match *stuck {
            LedgerInput::Balance(a) => touched(a),
            LedgerInput::Transfer { from, .. } | LedgerInput::Pay { from, .. } => touched(from),
            LedgerInput::Total => matches!(other, LedgerInput::Pay { .. }),
        }
    }
}
// Guide, end of your own model.

/// Draws one operation: a transfer 40 % of the time, a payment 10 %, a
/// balance read 35 %, a total 15 %.
fn draw(rng: &mut ChaCha8Rng) -> (LedgerInput, Bytes) {
    let account = |rng: &mut ChaCha8Rng| rng.gen_range(0..ACCOUNTS as u8);
    match rng.gen_range(0..20) {
        0..=7 => {
            let from = account(rng);
            let to = (from + rng.gen_range(1..ACCOUNTS as u8)) % ACCOUNTS as u8;
            let amount: u32 = rng.gen_range(1..=79);
            let mut command = vec![0, from, to];
            command.extend_from_slice(&amount.to_le_bytes());
            let input = LedgerInput::Transfer {
                from,
                to,
                amount: amount as i64,
            };
            (input, command.into())
        }
        8..=9 => {
            let from = account(rng);
            let amount: u32 = rng.gen_range(1..=20);
            let mut command = vec![3, from];
            command.extend_from_slice(&amount.to_le_bytes());
            let input = LedgerInput::Pay {
                from,
                amount: amount as i64,
            };
            (input, command.into())
        }
        10..=16 => {
            let a = account(rng);
            (LedgerInput::Balance(a), Bytes::from(vec![1, a]))
        }
        _ => (LedgerInput::Total, Bytes::from_static(&[2])),
    }
}

/// The ledger's workload, judged by a model `M` (the [`Ledger`], or a
/// variant of it for measurements).
pub struct LedgerJudged<M> {
    model: M,
}

impl<M> LedgerJudged<M> {
    /// Judged by `model`.
    pub fn new(model: M) -> Self {
        LedgerJudged { model }
    }
}

impl<M: Model<Input = LedgerInput, Output = LedgerOutput>> ModelWorkload for LedgerJudged<M> {
    type Model = M;

    fn model(&self) -> &M {
        &self.model
    }

    fn next_operation(
        &mut self,
        _client: usize,
        _now_ns: u64,
        rng: &mut ChaCha8Rng,
    ) -> Option<(LedgerInput, Bytes)> {
        Some(draw(rng))
    }

    fn output(&self, input: &LedgerInput, response: &[u8]) -> Result<LedgerOutput, String> {
        match (input, response) {
            (LedgerInput::Transfer { .. } | LedgerInput::Pay { .. }, [moved]) => {
                Ok(LedgerOutput::Moved(*moved == 1))
            }
            (LedgerInput::Balance(_) | LedgerInput::Total, bytes) => <[u8; 8]>::try_from(bytes)
                .map(|b| LedgerOutput::Amount(i64::from_le_bytes(b)))
                .map_err(|_| "want 8 bytes".to_string()),
            _ => Err("want 1 byte".to_string()),
        }
    }

    fn is_read_only(&self, input: &LedgerInput) -> bool {
        matches!(input, LedgerInput::Balance(_) | LedgerInput::Total)
    }

    /// The guide's limits (the bank's).
    fn check_config(&self) -> CheckConfig {
        CheckConfig {
            max_steps: 1_000_000,
            shrink_steps: 1_000_000,
            ..CheckConfig::default()
        }
    }
}
