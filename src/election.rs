//! stub
use crate::{Action, Node, Message};
impl Node {
    pub(crate) fn tick(&mut self, _a: &mut Vec<Action>) { todo!() }
    pub(crate) fn receive(&mut self, _m: Message, _a: &mut Vec<Action>) { todo!() }
    pub(crate) fn propose(&mut self, _p: impl Iterator<Item = bytes::Bytes>, _n: usize, _a: &mut Vec<Action>) { todo!() }
    pub(crate) fn handle_persisted(&mut self, _id: crate::WriteId) { todo!() }
    pub(crate) fn handle_applied(&mut self, _i: crate::Index) { todo!() }
    pub(crate) fn after_step(&mut self, _a: &mut Vec<Action>) { todo!() }
}
