//! A small bank as a user would write it on concord: the replicated state
//! machine, the commands its clients send, and two ways of judging the
//! answers under the simulator: a model (linearizability against
//! `concord_sim::models::Bank`, no hand-written judge) and an
//! invariant-only judge (money is conserved, no balance goes negative).
//!
//! Commands (bytes): transfer `[0, from, to, amount: u32 le]` answers
//! `[1]` when it moved the money, `[0]` for insufficient funds; balance
//! `[1, account]` and total `[2]` answer an `i64 le`. Balance and total
//! are reads: the simulator may serve them without a log entry
//! (ReadIndex, lease or follower reads).

use bytes::Bytes;
use concord::state_machine::{RestoreError, StateMachine};
use concord_sim::check::workload::ModelWorkload;
use concord_sim::models::{Bank, BankInput, BankOutput};
use concord_sim::{OpResult, Workload, WorkloadReport};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// The accounts and their opening balances.
pub const ACCOUNTS: [(&str, i64); 4] =
    [("alice", 100), ("bob", 100), ("carol", 100), ("dave", 100)];

/// The replicated state machine: one balance per account.
pub struct BankSm {
    balances: Vec<i64>,
}

impl Default for BankSm {
    fn default() -> Self {
        BankSm {
            balances: ACCOUNTS.iter().map(|(_, b)| *b).collect(),
        }
    }
}

impl BankSm {
    fn read(&self, command: &[u8]) -> Option<Bytes> {
        let amount = match command {
            [1, account] => *self.balances.get(*account as usize)?,
            [2] => self.balances.iter().sum(),
            _ => return None,
        };
        Some(Bytes::copy_from_slice(&amount.to_le_bytes()))
    }
}

impl StateMachine for BankSm {
    fn apply(&mut self, _index: u64, command: &[u8]) -> Bytes {
        if let [0, from, to, a, b, c, d] = command {
            let (from, to) = (*from as usize, *to as usize);
            let amount = u32::from_le_bytes([*a, *b, *c, *d]) as i64;
            if from >= self.balances.len() || to >= self.balances.len() {
                return Bytes::new();
            }
            if self.balances[from] < amount {
                return Bytes::from_static(&[0]);
            }
            self.balances[from] -= amount;
            self.balances[to] += amount;
            return Bytes::from_static(&[1]);
        }
        // A read sent through the log answers like a query.
        self.read(command).unwrap_or_default()
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
        if snapshot.len() != 8 * ACCOUNTS.len() {
            return Err(RestoreError::new("want 8 bytes per account"));
        }
        self.balances = snapshot
            .chunks(8)
            .map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes")))
            .collect();
        Ok(())
    }
}

/// Draws one operation: a transfer half the time, else a balance or a
/// total read.
fn draw(rng: &mut ChaCha8Rng) -> (BankInput, Bytes) {
    let account = |i: usize| ACCOUNTS[i].0.to_string();
    match rng.gen_range(0..20) {
        0..=9 => {
            let from = rng.gen_range(0..ACCOUNTS.len());
            let to = (from + rng.gen_range(1..ACCOUNTS.len())) % ACCOUNTS.len();
            let amount: u32 = rng.gen_range(1..80);
            let mut command = vec![0, from as u8, to as u8];
            command.extend_from_slice(&amount.to_le_bytes());
            (
                BankInput::Transfer {
                    from: account(from),
                    to: account(to),
                    amount: amount as i64,
                },
                command.into(),
            )
        }
        10..=16 => {
            let a = rng.gen_range(0..ACCOUNTS.len());
            (
                BankInput::Balance(account(a)),
                Bytes::from(vec![1, a as u8]),
            )
        }
        _ => (BankInput::Total, Bytes::from_static(&[2])),
    }
}

fn is_read(command: &[u8]) -> bool {
    matches!(command.first(), Some(1 | 2))
}

/// The workload judged by the model: it names the model and maps commands
/// and answers to the model's inputs and outputs.
pub struct ModelJudged {
    bank: Bank,
}

impl Default for ModelJudged {
    fn default() -> Self {
        ModelJudged {
            bank: Bank::new(ACCOUNTS),
        }
    }
}

impl ModelWorkload for ModelJudged {
    type Model = Bank;

    fn model(&self) -> &Bank {
        &self.bank
    }

    fn next_operation(
        &mut self,
        _client: usize,
        _now_ns: u64,
        rng: &mut ChaCha8Rng,
    ) -> Option<(BankInput, Bytes)> {
        Some(draw(rng))
    }

    fn output(&self, input: &BankInput, response: &[u8]) -> Result<BankOutput, String> {
        match (input, response) {
            (BankInput::Transfer { .. }, [done]) => Ok(BankOutput::Transferred(*done == 1)),
            (BankInput::Balance(_) | BankInput::Total, bytes) => <[u8; 8]>::try_from(bytes)
                .map(|b| BankOutput::Amount(i64::from_le_bytes(b)))
                .map_err(|_| "want 8 bytes".to_string()),
            _ => Err("want 1 byte".to_string()),
        }
    }

    fn is_read_only(&self, input: &BankInput) -> bool {
        !matches!(input, BankInput::Transfer { .. })
    }
}

/// The same operations judged by invariants only: every total read is the
/// opening total, no balance read is negative.
#[derive(Default)]
pub struct InvariantJudged {
    /// Per client: the command in flight.
    current: Vec<Option<Bytes>>,
    checked: u64,
    broken: Option<String>,
}

impl Workload for InvariantJudged {
    fn next_command(&mut self, client: usize, _now_ns: u64, rng: &mut ChaCha8Rng) -> Option<Bytes> {
        let (_, command) = draw(rng);
        if self.current.len() <= client {
            self.current.resize(client + 1, None);
        }
        self.current[client] = Some(command.clone());
        Some(command)
    }

    fn complete(&mut self, client: usize, _now_ns: u64, result: OpResult<'_>) {
        let Some(command) = self.current.get_mut(client).and_then(Option::take) else {
            return;
        };
        let OpResult::Ok(response) = result else {
            return;
        };
        self.checked += 1;
        let opening: i64 = ACCOUNTS.iter().map(|(_, b)| b).sum();
        let amount = <[u8; 8]>::try_from(response).map(i64::from_le_bytes);
        match (command.first(), amount) {
            (Some(2), Ok(total)) if total != opening => {
                self.broken
                    .get_or_insert(format!("total {total}, not {opening}: money not conserved"));
            }
            (Some(1), Ok(balance)) if balance < 0 => {
                self.broken
                    .get_or_insert(format!("negative balance {balance}"));
            }
            _ => {}
        }
    }

    fn is_read_only(&self, command: &[u8]) -> bool {
        is_read(command)
    }

    fn finish(&mut self) -> WorkloadReport {
        WorkloadReport {
            operations_checked: self.checked,
            failure: self.broken.clone(),
        }
    }
}
