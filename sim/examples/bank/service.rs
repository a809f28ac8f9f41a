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
use concord::ReadPath;
use concord_sim::check::workload::ModelWorkload;
use concord_sim::linearizability::CheckConfig;
use concord_sim::models::{Bank, BankInput, BankOutput};
use concord_sim::{
    CoreBugs, FaultKind, FaultSet, OpResult, ReadChoice, SimConfig, Workload, WorkloadReport,
};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// The largest transfer unless told otherwise.
const DEFAULT_MAX_AMOUNT: u32 = 79;

/// The accounts and their opening balances.
pub const ACCOUNTS: [(&str, i64); 4] =
    [("alice", 100), ("bob", 100), ("carol", 100), ("dave", 100)];

/// The replicated state machine: one balance per account.
pub struct BankSm {
    balances: Vec<i64>,
    /// A planted bug for the proptest example: a transfer of more than
    /// this many credits credits the receiver twice.
    double_credit_above: Option<i64>,
}

impl Default for BankSm {
    fn default() -> Self {
        BankSm {
            balances: ACCOUNTS.iter().map(|(_, b)| *b).collect(),
            double_credit_above: None,
        }
    }
}

impl BankSm {
    /// The bank with a planted bug: a transfer of more than `limit`
    /// credits credits the receiver twice.
    pub fn double_crediting_above(limit: i64) -> Self {
        BankSm {
            double_credit_above: Some(limit),
            ..BankSm::default()
        }
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
            if self.double_credit_above.is_some_and(|limit| amount > limit) {
                self.balances[to] += amount;
            }
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

/// Draws one operation: a transfer of 1 to `max_amount` credits half the
/// time, else a balance or a total read.
fn draw(rng: &mut ChaCha8Rng, max_amount: u32) -> (BankInput, Bytes) {
    let account = |i: usize| ACCOUNTS[i].0.to_string();
    match rng.gen_range(0..20) {
        0..=9 => {
            let from = rng.gen_range(0..ACCOUNTS.len());
            let to = (from + rng.gen_range(1..ACCOUNTS.len())) % ACCOUNTS.len();
            let amount: u32 = rng.gen_range(1..=max_amount.max(1));
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
    max_amount: u32,
}

impl ModelJudged {
    /// Transfers of at most `max_amount` credits.
    pub fn new(max_amount: u32) -> Self {
        ModelJudged {
            bank: Bank::new(ACCOUNTS),
            max_amount,
        }
    }
}

impl Default for ModelJudged {
    fn default() -> Self {
        ModelJudged::new(DEFAULT_MAX_AMOUNT)
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
        Some(draw(rng, self.max_amount))
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

    /// At most 1,000,000 search steps: a run's history is decided in well
    /// under that when it has few transfers of unknown outcome, but one
    /// that is not linearizable with dozens of them (a partition that
    /// times out many clients) may need minutes to rule out every order;
    /// beyond the limit the verdict is "UNKNOWN (not a pass)".
    fn check_config(&self) -> CheckConfig {
        CheckConfig {
            max_steps: 1_000_000,
            shrink_steps: 1_000_000,
            ..CheckConfig::default()
        }
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
        let (_, command) = draw(rng, DEFAULT_MAX_AMOUNT);
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

/// The simulator configuration of the example: three nodes, network
/// partitions as the faults, reads through ReadIndex, clients that give
/// up on a silent server after 100 ms (and so find a new leader while the
/// old one still answers). `planted_stale_read` makes a leader answer
/// reads from its local state without ReadIndex's heartbeat round (a
/// mutation of concord's core), so that a deposed leader that does not
/// know it yet answers old balances. The simulator's step rules, which
/// would flag that mutation in concord's own steps, are off: the answers
/// are judged by the workload alone, as a bug in your service would be.
pub fn config(planted_stale_read: bool) -> SimConfig {
    SimConfig {
        nodes: 3,
        clients: 6,
        reads: ReadChoice::Only(ReadPath::ReadIndex),
        faults: FaultSet::NONE.with(FaultKind::Partition),
        client_timeout_ns: 100_000_000,
        core_bugs: CoreBugs {
            read_index_without_round: planted_stale_read,
            ..CoreBugs::default()
        },
        step_rules: false,
        read_fresh: false,
        ..SimConfig::default()
    }
}
