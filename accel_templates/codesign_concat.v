// Channel concatenation of two streams (StreamingConcat), SIMD elements per word.
//
// Per pixel the output carries the F0 words of input 0 (its C0 = F0 * SIMD channels), then the
// F1 words of input 1; each element is sign- or zero-extended (SIGNED0 / SIGNED1) from its
// input width to OBITS (both are usually the output width: one shared quantizer). Only the
// input being read sees TREADY: in0 while sel = 0, in1 while sel = 1, and only when the output
// register is free or being emptied (adv), so a word moves on every clock that the selected
// input is valid and the output is taken; the other input waits in its FIFO.
//
// Timing: no wide compare on the path to a register. The phase counter `rem` counts the words
// left in the current phase down, and the flag `last` (registered) says the current word is the
// phase's last one; it is computed one word ahead from `rem` == 1 (a compare with a constant on
// CB bits) or, at a phase switch, from the other phase's length (a parameter).
//
// Latency: 1 cycle (a word accepted at t is in the output register at t + 1); II = 1.
module codesign_concat #(
    parameter integer SIMD = 1,
    parameter integer IBITS0 = 4,
    parameter integer IBITS1 = 4,
    parameter integer OBITS = 4,
    parameter integer SIGNED0 = 0,
    parameter integer SIGNED1 = 0,
    parameter integer F0 = 1,
    parameter integer F1 = 1,
    parameter integer CB = 1
) (
    input  wire                   ap_clk,
    input  wire                   ap_rst_n,
    input  wire [SIMD*IBITS0-1:0] in0_V_TDATA,
    input  wire                   in0_V_TVALID,
    output wire                   in0_V_TREADY,
    input  wire [SIMD*IBITS1-1:0] in1_V_TDATA,
    input  wire                   in1_V_TVALID,
    output wire                   in1_V_TREADY,
    output reg  [SIMD*OBITS-1:0]  out_V_TDATA,
    output reg                    out_V_TVALID,
    input  wire                   out_V_TREADY
);
    reg          sel;                   // 0: taking input 0's words of the pixel, 1: input 1's
    reg          last;                  // the word taken next is the last of the phase
    reg [CB-1:0] rem;                   // words of the phase left after the next one

    wire adv = !out_V_TVALID || out_V_TREADY;
    wire fire = adv && (sel ? in1_V_TVALID : in0_V_TVALID);
    assign in0_V_TREADY = adv && !sel;
    assign in1_V_TREADY = adv && sel;

    genvar p;
    generate
        for (p = 0; p < SIMD; p = p + 1) begin : g_el
            wire [IBITS0-1:0] a = in0_V_TDATA[p*IBITS0 +: IBITS0];
            wire [IBITS1-1:0] b = in1_V_TDATA[p*IBITS1 +: IBITS1];
            wire [OBITS-1:0] ae;
            wire [OBITS-1:0] be;
            if (OBITS > IBITS0) begin : g_ext0
                assign ae = {{(OBITS - IBITS0){(SIGNED0 != 0) ? a[IBITS0-1] : 1'b0}}, a};
            end else begin : g_same0
                assign ae = a[OBITS-1:0];
            end
            if (OBITS > IBITS1) begin : g_ext1
                assign be = {{(OBITS - IBITS1){(SIGNED1 != 0) ? b[IBITS1-1] : 1'b0}}, b};
            end else begin : g_same1
                assign be = b[OBITS-1:0];
            end
            always @(posedge ap_clk) begin
                if (fire) out_V_TDATA[p*OBITS +: OBITS] <= sel ? be : ae;
            end
        end
    endgenerate

    always @(posedge ap_clk) begin
        if (!ap_rst_n) begin
            out_V_TVALID <= 1'b0;
            sel <= 1'b0;
            last <= (F0 == 1);
            rem <= F0 - 1;
        end else begin
            if (adv) out_V_TVALID <= fire;
            if (fire) begin
                if (last) begin
                    sel <= !sel;
                    rem <= sel ? F0 - 1 : F1 - 1;
                    last <= sel ? (F0 == 1) : (F1 == 1);
                end else begin
                    rem <= rem - 1'b1;
                    last <= (rem == 1);
                end
            end
        end
    end
endmodule
