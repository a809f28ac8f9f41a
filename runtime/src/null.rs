//! A state machine that does nothing: for measuring the replication path
//! alone (benchmarks) and for tests of the runtime that need no state.

use bytes::Bytes;

use concord::state_machine::{RestoreError, StateMachine};
use concord::Index;

/// Applies nothing and answers every command with empty bytes.
#[derive(Clone, Copy, Debug, Default)]
pub struct NullStateMachine;

impl StateMachine for NullStateMachine {
    fn apply(&mut self, _index: Index, _command: &[u8]) -> Bytes {
        Bytes::new()
    }

    fn snapshot(&self) -> Bytes {
        Bytes::new()
    }

    fn restore(&mut self, _snapshot: &[u8]) -> Result<(), RestoreError> {
        Ok(())
    }
}
