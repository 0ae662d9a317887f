//! Metadata values of a GGUF file.

/// One metadata value. Arrays hold values of a single type; ggml does not
/// allow arrays of arrays, and neither does this reader.
#[derive(Debug, Clone, PartialEq)]
pub enum GgufValue {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    U64(u64),
    I64(i64),
    F32(f32),
    F64(f64),
    Bool(bool),
    Str(String),
    Array(Vec<GgufValue>),
}

impl GgufValue {
    /// Any integer that is non-negative: writers differ on the integer type
    /// of counts and ids (u32 vs i32 vs u64).
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Self::U8(v) => Some(v.into()),
            Self::U16(v) => Some(v.into()),
            Self::U32(v) => Some(v.into()),
            Self::U64(v) => Some(v),
            Self::I8(v) => u64::try_from(v).ok(),
            Self::I16(v) => u64::try_from(v).ok(),
            Self::I32(v) => u64::try_from(v).ok(),
            Self::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// Any integer that fits in an i64.
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            Self::U8(v) => Some(v.into()),
            Self::U16(v) => Some(v.into()),
            Self::U32(v) => Some(v.into()),
            Self::U64(v) => i64::try_from(v).ok(),
            Self::I8(v) => Some(v.into()),
            Self::I16(v) => Some(v.into()),
            Self::I32(v) => Some(v.into()),
            Self::I64(v) => Some(v),
            _ => None,
        }
    }

    /// Any float or integer (integers beyond 2^53 round).
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Self::F32(v) => Some(v.into()),
            Self::F64(v) => Some(v),
            Self::U64(v) => Some(v as f64),
            _ => self.as_i64().map(|v| v as f64),
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Self::Bool(v) => Some(v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::Str(v) => Some(v),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[GgufValue]> {
        match self {
            Self::Array(v) => Some(v),
            _ => None,
        }
    }

    /// An array whose elements are all strings (e.g. `tokenizer.ggml.tokens`).
    pub fn as_string_list(&self) -> Option<Vec<&str>> {
        self.as_array()?.iter().map(Self::as_str).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::GgufValue::*;

    #[test]
    fn integer_accessors_convert_between_widths() {
        assert_eq!(U32(7).as_u64(), Some(7));
        assert_eq!(I32(-1).as_u64(), None);
        assert_eq!(I32(-1).as_i64(), Some(-1));
        assert_eq!(U64(u64::MAX).as_i64(), None);
        assert_eq!(U8(3).as_f64(), Some(3.0));
        assert_eq!(F32(0.5).as_f64(), Some(0.5));
        assert_eq!(Str("x".into()).as_u64(), None);
        assert_eq!(F32(1.0).as_u64(), None);
    }

    #[test]
    fn string_list_needs_all_strings() {
        let list = Array(vec![Str("a".into()), Str("b".into())]);
        assert_eq!(list.as_string_list(), Some(vec!["a", "b"]));
        assert_eq!(Array(vec![Str("a".into()), U8(1)]).as_string_list(), None);
        assert_eq!(Str("a".into()).as_string_list(), None);
    }
}
