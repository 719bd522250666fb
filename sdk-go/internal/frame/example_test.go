package frame_test

import (
	"errors"
	"fmt"

	"github.com/vyx-dev/vyx/sdk-go/internal/frame"
)

func ExampleDecode() {
	msg := (&frame.Window{StreamID: 1, Increment: 65536}).Encode()
	f, err := frame.Decode(msg, frame.MaxFrameSize)
	fmt.Printf("%x %v\n", msg, err)
	fmt.Println(frame.TypeName(f.Type()), f.(*frame.Window).Increment)

	_, err = frame.Decode([]byte{0x06, 0, 0, 0, 0, 1}, frame.MaxFrameSize)
	var de *frame.DecodeError
	if errors.As(err, &de) {
		fmt.Println(de.Kind, de.CloseCode())
	}
	// Output:
	// 08000000000100010000 <nil>
	// WINDOW 65536
	// unknown_type 4005 protocol_violation
}
