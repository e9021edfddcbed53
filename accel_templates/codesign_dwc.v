// Stream data-width converter (identity on the element sequence), INW -> OUTW bits per word.
//
// A bit queue of INW + OUTW bits: input words are appended above the valid bits, output words
// are taken from the bottom (element 0 stays in the LSBs, as the packing contract wants).
// in0_V_TREADY depends only on the fill level (no combinational path from out_V_TREADY), and
// the queue can take a word and give a word in the same cycle, so the narrower side runs at one
// word per cycle. Any ratio works; the frame's bit count must be a multiple of both widths
// (checked by the generator).
//
// Latency: 1 cycle from the input word that completes an output word to that output word
// (t -> t + 1).
module codesign_dwc #(
    parameter integer INW = 8,
    parameter integer OUTW = 8
) (
    input  wire             ap_clk,
    input  wire             ap_rst_n,
    input  wire [INW-1:0]   in0_V_TDATA,
    input  wire             in0_V_TVALID,
    output wire             in0_V_TREADY,
    output wire [OUTW-1:0]  out_V_TDATA,
    output wire             out_V_TVALID,
    input  wire             out_V_TREADY
);
    localparam integer BW = INW + OUTW;
    localparam integer CW = $clog2(BW + 1);
    reg [BW-1:0] q;
    reg [CW-1:0] cnt;
    assign out_V_TVALID = (cnt >= OUTW);
    assign out_V_TDATA = q[OUTW-1:0];
    assign in0_V_TREADY = (cnt + INW <= BW);
    wire in_fire = in0_V_TREADY && in0_V_TVALID;
    wire out_fire = out_V_TVALID && out_V_TREADY;
    wire [BW-1:0] q_after = out_fire ? (q >> OUTW) : q;
    wire [CW-1:0] cnt_after = out_fire ? cnt - OUTW : cnt;
    wire [BW-1:0] ins = {{OUTW{1'b0}}, in0_V_TDATA} << cnt_after;
    wire [BW-1:0] keep = ~({BW{1'b1}} << cnt_after);

    always @(posedge ap_clk) begin
        if (!ap_rst_n) begin
            cnt <= 0;
            q <= 0;
        end else begin
            q <= in_fire ? ((q_after & keep) | ins) : q_after;
            cnt <= cnt_after + (in_fire ? INW : 0);
        end
    end
endmodule
