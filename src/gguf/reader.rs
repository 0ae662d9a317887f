//! A bounds-checked little-endian cursor over a GGUF header.
//!
//! Errors are plain reasons; the caller adds context and the file path.
//! Every count read from the file is checked against the bytes left before
//! anything is allocated for it.

use super::GgufValue;

pub(super) type Parse<T> = std::result::Result<T, String>;

/// GGUF metadata value type ids (`enum gguf_type`).
const TYPE_U8: u32 = 0;
const TYPE_I8: u32 = 1;
const TYPE_U16: u32 = 2;
const TYPE_I16: u32 = 3;
const TYPE_U32: u32 = 4;
const TYPE_I32: u32 = 5;
const TYPE_F32: u32 = 6;
const TYPE_BOOL: u32 = 7;
const TYPE_STRING: u32 = 8;
const TYPE_ARRAY: u32 = 9;
const TYPE_U64: u32 = 10;
const TYPE_I64: u32 = 11;
const TYPE_F64: u32 = 12;

pub(super) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    pub fn pos(&self) -> usize {
        self.pos
    }

    fn remaining(&self) -> usize {
        self.rest().len()
    }

    /// The next `n` bytes.
    fn bytes(&mut self, n: u64, what: &str) -> Parse<&'a [u8]> {
        let slice =
            usize::try_from(n).ok().and_then(|n| self.rest().get(..n)).ok_or_else(|| self.truncated(n, what))?;
        self.pos += slice.len();
        Ok(slice)
    }

    /// The next `N` bytes, by value.
    pub fn array<const N: usize>(&mut self, what: &str) -> Parse<[u8; N]> {
        let array = *self.rest().first_chunk::<N>().ok_or_else(|| self.truncated(N as u64, what))?;
        self.pos += N;
        Ok(array)
    }

    fn rest(&self) -> &'a [u8] {
        // `pos` never passes the end: it only advances over bytes just read.
        &self.buf[self.pos..]
    }

    fn truncated(&self, n: u64, what: &str) -> String {
        format!("truncated: {what} needs {n} bytes at offset {}, {} left", self.pos, self.remaining())
    }

    pub fn u32(&mut self, what: &str) -> Parse<u32> {
        self.array(what).map(u32::from_le_bytes)
    }

    pub fn u64(&mut self, what: &str) -> Parse<u64> {
        self.array(what).map(u64::from_le_bytes)
    }

    /// A u64 length-prefixed UTF-8 string.
    pub fn string(&mut self, what: &str) -> Parse<String> {
        let len = self.u64(what)?;
        let bytes = self.bytes(len, what)?;
        let s = std::str::from_utf8(bytes).map_err(|_| format!("{what} is not valid UTF-8"))?;
        Ok(s.to_owned())
    }

    /// A u64 count of items that take at least `min_size` bytes each,
    /// rejected if that many items cannot fit in the rest of the file.
    pub fn count(&mut self, min_size: usize, what: &str) -> Parse<usize> {
        let n = self.u64(what)?;
        let fits = usize::try_from(n).ok().filter(|&n| n.checked_mul(min_size).is_some_and(|b| b <= self.remaining()));
        fits.ok_or_else(|| format!("{what} {n} cannot fit in the {} bytes left", self.remaining()))
    }

    /// A metadata value of type id `ty`.
    pub fn value(&mut self, ty: u32) -> Parse<GgufValue> {
        use GgufValue::*;
        Ok(match ty {
            TYPE_U8 => U8(u8::from_le_bytes(self.array("u8 value")?)),
            TYPE_I8 => I8(i8::from_le_bytes(self.array("i8 value")?)),
            TYPE_U16 => U16(u16::from_le_bytes(self.array("u16 value")?)),
            TYPE_I16 => I16(i16::from_le_bytes(self.array("i16 value")?)),
            TYPE_U32 => U32(self.u32("u32 value")?),
            TYPE_I32 => I32(i32::from_le_bytes(self.array("i32 value")?)),
            TYPE_F32 => F32(f32::from_le_bytes(self.array("f32 value")?)),
            // ggml reads a bool as one byte; anything but 0 is true.
            TYPE_BOOL => Bool(self.array::<1>("bool value")? != [0]),
            TYPE_STRING => Str(self.string("string value")?),
            TYPE_U64 => U64(self.u64("u64 value")?),
            TYPE_I64 => I64(i64::from_le_bytes(self.array("i64 value")?)),
            TYPE_F64 => F64(f64::from_le_bytes(self.array("f64 value")?)),
            TYPE_ARRAY => self.array_value()?,
            _ => return Err(format!("unknown value type {ty}")),
        })
    }

    /// An array: element type, u64 count, elements. Arrays of arrays are
    /// rejected, as ggml does, which also bounds the recursion depth.
    fn array_value(&mut self) -> Parse<GgufValue> {
        let ty = self.u32("array element type")?;
        let min_size = match ty {
            TYPE_U8 | TYPE_I8 | TYPE_BOOL => 1,
            TYPE_U16 | TYPE_I16 => 2,
            TYPE_U32 | TYPE_I32 | TYPE_F32 => 4,
            // A string's smallest encoding is its u64 length.
            TYPE_U64 | TYPE_I64 | TYPE_F64 | TYPE_STRING => 8,
            TYPE_ARRAY => return Err("arrays of arrays are not supported".into()),
            _ => return Err(format!("unknown array element type {ty}")),
        };
        let n = self.count(min_size, "array length")?;
        let mut items = Vec::with_capacity(n);
        for _ in 0..n {
            items.push(self.value(ty)?);
        }
        Ok(GgufValue::Array(items))
    }
}
