package frame

// Data is a DATA frame (§3.3): body bytes of one direction of a stream.
type Data struct {
	StreamID  uint32
	EndStream bool
	Data      []byte
}

// Type returns TypeData.
func (*Data) Type() byte { return TypeData }

// Encode returns the whole message.
func (d *Data) Encode() []byte {
	return append(header(TypeData, d.EndStream, d.StreamID, len(d.Data)), d.Data...)
}

// MaxDataPayload is the most body bytes one DATA frame carries (§5: split at max_frame_size − 6).
const MaxDataPayload = MaxFrameSize - HeaderSize
