//! Typed access to a node's attributes.
//!
//! Every attribute a node carries must be read by its op's parser: an attribute the engine does
//! not understand is an error, never silently ignored, since it could change the result.

use std::cell::RefCell;
use std::collections::BTreeSet;

use super::{invalid, unsupported, OpResult};
use crate::proto::{attribute_type as ty, AttributeProto, NodeProto, TensorProto};

pub(crate) struct Attrs<'a> {
    attrs: &'a [AttributeProto],
    read: RefCell<BTreeSet<&'a str>>,
}

impl<'a> Attrs<'a> {
    pub fn new(node: &'a NodeProto) -> OpResult<Attrs<'a>> {
        if let Some(a) = node.attribute.iter().find(|a| !a.ref_attr_name.is_empty()) {
            return unsupported(format!(
                "attribute {} refers to a function attribute, which is not supported",
                a.name
            ));
        }
        Ok(Attrs {
            attrs: &node.attribute,
            read: RefCell::new(BTreeSet::new()),
        })
    }

    fn get(&self, name: &str, expected: i32) -> OpResult<Option<&'a AttributeProto>> {
        let Some(a) = self.attrs.iter().find(|a| a.name == name) else {
            return Ok(None);
        };
        self.read.borrow_mut().insert(a.name.as_str());
        // type 0 (UNDEFINED) comes from very old exporters; trust the field then.
        if a.r#type != 0 && a.r#type != expected {
            return invalid(format!(
                "attribute {name} has attribute type {}, expected {expected}",
                a.r#type
            ));
        }
        Ok(Some(a))
    }

    pub fn int(&self, name: &str) -> OpResult<Option<i64>> {
        Ok(self.get(name, ty::INT)?.map(|a| a.i))
    }

    pub fn int_or(&self, name: &str, default: i64) -> OpResult<i64> {
        Ok(self.int(name)?.unwrap_or(default))
    }

    pub fn float_or(&self, name: &str, default: f32) -> OpResult<f32> {
        Ok(self.get(name, ty::FLOAT)?.map_or(default, |a| a.f))
    }

    pub fn float(&self, name: &str) -> OpResult<Option<f32>> {
        Ok(self.get(name, ty::FLOAT)?.map(|a| a.f))
    }

    pub fn ints(&self, name: &str) -> OpResult<Option<Vec<i64>>> {
        Ok(self.get(name, ty::INTS)?.map(|a| a.ints.clone()))
    }

    pub fn floats(&self, name: &str) -> OpResult<Option<Vec<f32>>> {
        Ok(self.get(name, ty::FLOATS)?.map(|a| a.floats.clone()))
    }

    pub fn string_or(&self, name: &str, default: &str) -> OpResult<String> {
        match self.get(name, ty::STRING)? {
            None => Ok(default.to_string()),
            Some(a) => String::from_utf8(a.s.clone())
                .or_else(|_| invalid(format!("attribute {name} is not UTF-8"))),
        }
    }

    pub fn tensor(&self, name: &str) -> OpResult<Option<&'a TensorProto>> {
        match self.get(name, ty::TENSOR)? {
            None => Ok(None),
            Some(a) => match &a.t {
                Some(t) => Ok(Some(t)),
                None => invalid(format!("attribute {name} holds no tensor")),
            },
        }
    }

    /// Marks attributes that do not affect inference (e.g. training-only settings) as read.
    pub fn ignore(&self, names: &[&str]) {
        let mut read = self.read.borrow_mut();
        for a in self
            .attrs
            .iter()
            .filter(|a| names.contains(&a.name.as_str()))
        {
            read.insert(a.name.as_str());
        }
    }

    /// Fails on the first attribute that no parser read.
    pub fn check_all_read(&self) -> OpResult<()> {
        let read = self.read.borrow();
        match self.attrs.iter().find(|a| !read.contains(a.name.as_str())) {
            Some(a) => unsupported(format!("attribute {} is not supported", a.name)),
            None => Ok(()),
        }
    }
}
