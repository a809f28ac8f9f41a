//! A bank: accounts with balances, transfers that fail on insufficient
//! funds, balance and total reads.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::typed::{field_bool, field_i64, field_value, JsonModel};
use crate::Model;

/// What a bank client asks for.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum BankInput {
    /// Move `amount` from one account to another, if `from` holds at
    /// least `amount`.
    Transfer {
        /// Debited account.
        from: String,
        /// Credited account.
        to: String,
        /// Amount moved (not negative).
        amount: i64,
    },
    /// Read one account's balance.
    Balance(String),
    /// Read the sum of all balances.
    Total,
}

/// What a bank answered.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum BankOutput {
    /// A transfer completed: `true` if it moved the money, `false` if it
    /// was refused for insufficient funds (and changed nothing).
    Transferred(bool),
    /// A balance or total read.
    Amount(i64),
}

/// A bank with a fixed set of accounts and their opening balances. JSON
/// lines: `{"op":"transfer","from":A,"to":B,"amount":N,"transferred":true}`
/// (`transferred`, when completed: `false` for insufficient funds),
/// `{"op":"balance","account":A,"value":N}`, `{"op":"total","value":N}`.
/// A transfer naming an account the bank does not have is refused by the
/// model (never accepted).
#[derive(Clone, Debug)]
pub struct Bank {
    accounts: BTreeMap<String, usize>,
    opening: Vec<i64>,
}

impl Bank {
    /// A bank with these accounts and opening balances.
    pub fn new<S: Into<String>>(accounts: impl IntoIterator<Item = (S, i64)>) -> Bank {
        let mut map = BTreeMap::new();
        let mut opening = Vec::new();
        for (name, balance) in accounts {
            let name = name.into();
            if let std::collections::btree_map::Entry::Vacant(slot) = map.entry(name) {
                slot.insert(opening.len());
                opening.push(balance);
            }
        }
        Bank {
            accounts: map,
            opening,
        }
    }

    /// Parses `a=100,b=50`.
    pub fn parse(spec: &str) -> Result<Bank, String> {
        let mut accounts = Vec::new();
        for item in spec.split(',').filter(|s| !s.trim().is_empty()) {
            let (name, balance) = item
                .split_once('=')
                .ok_or_else(|| format!("{item:?} is not NAME=BALANCE"))?;
            let balance: i64 = balance
                .trim()
                .parse()
                .map_err(|_| format!("{balance:?} is not a balance (an integer)"))?;
            accounts.push((name.trim().to_string(), balance));
        }
        if accounts.is_empty() {
            return Err("a bank needs at least one account (NAME=BALANCE,...)".into());
        }
        Ok(Bank::new(accounts))
    }

    fn index(&self, name: &str) -> Option<usize> {
        self.accounts.get(name).copied()
    }

    /// The sum of the opening balances.
    pub fn opening_total(&self) -> i64 {
        self.opening.iter().fold(0i64, |a, b| a.wrapping_add(*b))
    }
}

impl Model for Bank {
    type State = Vec<i64>;
    type Input = BankInput;
    type Output = BankOutput;

    fn name(&self) -> String {
        "bank".into()
    }
    fn init(&self) -> Vec<i64> {
        self.opening.clone()
    }
    fn step(&self, s: &Vec<i64>, i: &BankInput, o: &BankOutput) -> Option<Vec<i64>> {
        match (i, o) {
            (BankInput::Transfer { from, to, amount }, BankOutput::Transferred(done)) => {
                let (f, t) = (self.index(from)?, self.index(to)?);
                let enough = s[f] >= *amount;
                if *done != enough {
                    return None;
                }
                let mut n = s.clone();
                if enough {
                    n[f] = n[f].wrapping_sub(*amount);
                    n[t] = n[t].wrapping_add(*amount);
                }
                Some(n)
            }
            (BankInput::Balance(a), BankOutput::Amount(v)) => {
                (s[self.index(a)?] == *v).then(|| s.clone())
            }
            (BankInput::Total, BankOutput::Amount(v)) => {
                (s.iter().fold(0i64, |a, b| a.wrapping_add(*b)) == *v).then(|| s.clone())
            }
            _ => None,
        }
    }
    fn step_unknown(&self, s: &Vec<i64>, i: &BankInput) -> Vec<Vec<i64>> {
        match i {
            BankInput::Transfer { from, to, amount } => {
                let (Some(f), Some(t)) = (self.index(from), self.index(to)) else {
                    return Vec::new();
                };
                let mut n = s.clone();
                if n[f] >= *amount {
                    n[f] = n[f].wrapping_sub(*amount);
                    n[t] = n[t].wrapping_add(*amount);
                }
                vec![n]
            }
            _ => vec![s.clone()],
        }
    }
    fn read_only(&self, i: &BankInput, o: &BankOutput) -> bool {
        !matches!(
            (i, o),
            (BankInput::Transfer { .. }, BankOutput::Transferred(true))
        )
    }
    fn pins(&self, stuck: &BankInput, _o: &BankOutput, other: &BankInput) -> bool {
        match (stuck, other) {
            (BankInput::Balance(a), BankInput::Transfer { from, to, .. }) => a == from || a == to,
            (BankInput::Transfer { from: a, .. }, BankInput::Transfer { from, to, .. }) => {
                a == from || a == to
            }
            _ => false,
        }
    }
    fn describe_input(&self, i: &BankInput) -> String {
        match i {
            BankInput::Transfer { from, to, amount } => format!("transfer {amount} {from}->{to}"),
            BankInput::Balance(a) => format!("balance {a}"),
            BankInput::Total => "total".into(),
        }
    }
    fn describe_output(&self, o: &BankOutput) -> String {
        match o {
            BankOutput::Transferred(true) => "transferred".into(),
            BankOutput::Transferred(false) => "insufficient funds".into(),
            BankOutput::Amount(v) => v.to_string(),
        }
    }
    fn describe_state(&self, s: &Vec<i64>) -> String {
        let parts: Vec<String> = self
            .accounts
            .iter()
            .map(|(name, &i)| format!("{name}={}", s[i]))
            .collect();
        format!("{{{}}}", parts.join(", "))
    }
    fn state_heap_bytes(&self, s: &Vec<i64>) -> usize {
        crate::memory::alloc_bytes(s.capacity() * std::mem::size_of::<i64>())
    }
}

impl JsonModel for Bank {
    fn op_names(&self) -> &'static [&'static str] {
        &["transfer", "balance", "total"]
    }
    fn input_from_json(&self, op: &str, line: &Map<String, Value>) -> Result<BankInput, String> {
        let account = |field: &str| -> Result<String, String> {
            let a = field_value(line, field)?;
            if self.index(&a).is_none() {
                return Err(format!(
                    "account {a:?} is not one of the bank's ({})",
                    self.accounts.keys().cloned().collect::<Vec<_>>().join(", ")
                ));
            }
            Ok(a)
        };
        Ok(match op {
            "transfer" => {
                let amount = field_i64(line, "amount")?;
                if amount < 0 {
                    return Err(format!(
                        "a transfer's amount must not be negative, got {amount}"
                    ));
                }
                BankInput::Transfer {
                    from: account("from")?,
                    to: account("to")?,
                    amount,
                }
            }
            "balance" => BankInput::Balance(account("account")?),
            _ => BankInput::Total,
        })
    }
    fn output_from_json(
        &self,
        i: &BankInput,
        line: &Map<String, Value>,
    ) -> Result<BankOutput, String> {
        Ok(match i {
            BankInput::Transfer { .. } => BankOutput::Transferred(field_bool(line, "transferred")?),
            _ => BankOutput::Amount(field_i64(line, "value")?),
        })
    }
    fn input_to_json(&self, i: &BankInput, line: &mut Map<String, Value>) {
        match i {
            BankInput::Transfer { from, to, amount } => {
                line.insert("op".into(), "transfer".into());
                line.insert("from".into(), from.clone().into());
                line.insert("to".into(), to.clone().into());
                line.insert("amount".into(), (*amount).into());
            }
            BankInput::Balance(a) => {
                line.insert("op".into(), "balance".into());
                line.insert("account".into(), a.clone().into());
            }
            BankInput::Total => {
                line.insert("op".into(), "total".into());
            }
        }
    }
    fn output_to_json(&self, o: &BankOutput, line: &mut Map<String, Value>) {
        match o {
            BankOutput::Transferred(t) => {
                line.insert("transferred".into(), (*t).into());
            }
            BankOutput::Amount(v) => {
                line.insert("value".into(), (*v).into());
            }
        }
    }
}
